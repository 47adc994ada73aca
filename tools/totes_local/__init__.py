"""Tooling around the data platform that never ships to Lambda.

The ``totes`` command, the synthetic source (generator, snapshot loader,
mutations) and the local AWS runtime (a background service that runs the
synthesised state machine, and Lambda workers) live here, apart from the core
package that the Lambda layer carries.
"""
