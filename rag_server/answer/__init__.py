"""The answer stage: numbered evidence, the prompt, citations (parsed, mapped, checked), calibrated
abstention, and the two answerers (extractive, offline; generative, through the configured chat model)."""
