"""The host adapter: what makes DynamiCrafter a ComfyUI model family, apart from the node modules.

``family`` is the family itself (its config, ``BaseModel`` and conditioning keys), ``patcher`` builds the MODEL
patcher and VAE from a file, ``encoders`` the host's CLIP text and vision from its parts, ``lora_keys`` the names
the stock LoRA loader finds, ``ksampler`` the original DDIM as a KSAMPLER with its schedule and CFG function,
``guider`` separate text and image guidance as a GUIDER, ``validation`` the checks of what a workflow hands a node,
``inputs`` the category and input ranges the nodes share.
"""
