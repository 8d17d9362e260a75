"""MCN-style grounding: REC box + RES mask with GARAN, CEM and ASNLS."""
