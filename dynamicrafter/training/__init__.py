"""Fine-tuning DynamiCrafter: the original's training objective and its data windows (pure PyTorch).

``objective`` reproduces ``LatentVisualDiffusion.shared_step`` / ``p_losses`` of the original code on cached
encoder outputs; ``clips`` cuts videos into the 16-frame windows ``lvdm/data/webvid.py`` reads. Nothing here
imports ComfyUI: the nodes in ``nodes/training/`` hand in the host's model as a predictor function.
"""
