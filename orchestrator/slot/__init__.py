"""The slot: the one model container (mechanism only; ``docker_slot``), and its startup facts."""
