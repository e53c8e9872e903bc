"""raygan's studies: one file per paper table (or search), each defining ``STUDY``.

Run one with ``python studies/<name>.py --profile smoke`` or ``raygan study run <name>``;
``raygan study list`` lists them.
"""
