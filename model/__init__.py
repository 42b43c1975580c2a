"""Model layer: loading HumanVLM (or the offline demo model), prompts, generation, images in."""
