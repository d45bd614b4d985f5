"""Build the stack's images reproducibly and offline: base, wheelhouses, builds, manifests.

- ``base``: the local Debian base for hosts that reach no registry (debootstrap + docker import).
- ``wheelhouse``: hash-pinned lock files and the wheelhouses the builds install from.
- ``build``: docker builds with a manifest label, staleness, and ``images list``.
- ``cli``: the ``images`` command.
"""
