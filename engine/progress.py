"""The two callback types every long-running engine call takes.

`Progress` is called as `progress(done, total)` (tqdm on the command line, Qt signals in the GUI);
`ShouldStop` is polled as `should_stop()` and ends the call early, keeping what is done. Both are
optional (None) wherever they appear.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None] | None
ShouldStop = Callable[[], bool] | None
