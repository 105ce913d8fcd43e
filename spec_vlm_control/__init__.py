"""spec_vlm_control: speculative edge-cloud VLM decoding with early exits for legged robots."""
__version__ = "0.1.0"
