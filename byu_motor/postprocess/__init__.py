"""postprocess subpackage."""
