"""The bottom layer: errors, frames, geometry, password redaction, backoff, supervised threads and
child processes tied to their parent. Imports nothing else of the package.
"""
