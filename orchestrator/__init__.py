"""model slot: the control plane (profiles, the slot, switching, evidence tools)."""
