"""Reports for people: the compare report in Markdown and self-contained HTML, the terminal
quality table, and the files the CLI and the plugin write.

Owns: `sections` (the tables, built once), `markdown`, `html`, `quality_table` and `files`
(compare.md / compare.html for a pair or a set of runs).

May import: `embedgate.verdict` and everything it may import.
"""
