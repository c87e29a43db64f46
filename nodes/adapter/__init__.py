"""The host adapter: what makes DynamiCrafter a ComfyUI model family, apart from the node modules.

``patcher`` builds the MODEL patcher and VAE from a file, ``encoders`` the host's CLIP text and vision from its
parts, ``lora_keys`` the names the stock LoRA loader finds, ``ksampler`` the original DDIM as a KSAMPLER with its
schedule and CFG function, ``validation`` the checks of what a workflow hands a node.
"""
