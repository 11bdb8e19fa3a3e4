"""Options: one table per concern, resolved command line > environment > ``[tool.embedgate]`` >
default, with the source named in every error.

Owns: `options` (the mechanism: `OptionSpec`, resolution, path bases, the config table) and
`settings` (the kit's server, model, data and report options). Other layers add their own tables
(`embedgate.perf.options`) with the same mechanism.

May import: `embedgate.resources` only.
"""
