"""Alternative execution engines that reuse the pipeline stages."""
