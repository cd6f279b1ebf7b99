"""The review loop: which images a person looks at next (`queue`), the thresholds that turn scores
into predicted tags (`thresholds`), the undoable auto-accept rule (`auto_accept`), the model scores
they work on (`scores`), stable validation splits (`splits`), likely label mistakes
(`label_issues`) and training rounds (`rounds`). Import the module you need; nothing is re-exported.
"""
