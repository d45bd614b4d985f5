"""The slot's state and its one writer: switch and rollback, the controller, the lock, the
state file, the frontdoor client."""
