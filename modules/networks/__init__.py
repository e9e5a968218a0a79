"""Extra networks that change what a model does for one job: textual inversion embeddings and LoRA.

Both are self-contained services the generation path calls: `embeddings` (a database of embedding files and the
functions that put their vectors into a tokenized prompt) and `lora` (a database of LoRA files and the
`apply_loras` context manager that merges them into a loaded model and restores it bit-exactly on exit).
"""
