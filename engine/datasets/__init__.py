"""How the models see the project's images: `regions` (the teacher's images with proposals,
multi-scale batches) and `student` (the student's square inputs and crop views, shared by training
and tagging)."""
