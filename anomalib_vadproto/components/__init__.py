"""Building blocks shared by the plugin's models (blocks, memory, losses, cues, export, Lightning mixin).

Submodules are imported on demand; ``anomalib_vadproto.components.lightning`` pulls in anomalib.
"""
