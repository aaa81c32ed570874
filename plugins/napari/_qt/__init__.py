"""The plugin's Qt side: the review, compare, fine-tune and worklist widgets and their parts.

Everything Qt lives here; the modules one level up (reader, sample data, layer styles, launch)
import no Qt at module level.
"""
