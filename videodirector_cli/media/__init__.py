"""Pixels in and out: video decoding and encoding, frame and mask files, previews."""
