"""Fleet simulator and fault injection, driving real agent code (see the simulator issue)."""
