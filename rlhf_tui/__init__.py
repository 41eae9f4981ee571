"""The terminal dashboard (Textual). It knows the trainer only as a subprocess, a socket and a run
directory, and importing it must never import torch, ray, deepspeed or vllm (start-up over SSH).
The app and its `rlhf-tui` command arrive with the TUI issue."""
