"""Robustness evaluation of protections and watermarks under attack: the runner, its parts and reports.

Modules, each importing only modules listed after it: ``runner`` (:func:`~.runner.run`: the grid,
resuming, many processes under accelerate), ``methods`` (one class per method kind) and ``journal``
(the resumable row journals and run record), ``judges`` (face identity, segmentation, edit and payload
scores), ``config`` (the config schema, method specs, result columns) and ``grid`` (inputs, attacks,
row keys and seeds), ``editing`` (edit-damage measures), ``report`` (CSV, JSON, figures, HTML).
"""
