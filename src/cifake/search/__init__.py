"""The study's search as data: its space and budgets (grid), where a running search stands (status), and its
tables next to the paper's (tables). Running it composes the training workflow: cifake.workflows.search."""
