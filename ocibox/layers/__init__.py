"""Layer store: safe unpacking of layer streams, whiteouts, overlay mount options, image mount/export."""
