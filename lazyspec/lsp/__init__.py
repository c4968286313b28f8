"""`lazyspec lsp`: a Language Server for spec files, over stdio.

    server.py    the pygls server: documents, debouncing, the LSP features' handlers
    runner.py    the analysis worker process and the thread that feeds it the newest edit
    analysis.py  one engine run on an editor's buffer, as plain data (runs in the worker)
    features.py  diagnostics, inlay hints, hover, definition and completion from that data

The server process never imports torch: every engine run happens in one worker process,
so a slow spec cannot block the editor, and a newer edit supersedes an older run.
Importing this package loads nothing (no pygls, no torch), so `lazyspec lsp --help` stays fast.
"""
