"""The terminal dashboard (Textual). It knows the trainer only as a subprocess, a socket and a run
directory, and importing it must never import torch, ray, deepspeed or vllm (start-up over SSH).
`rlhf-tui` starts the app (`rlhf_tui.app:main`); this module imports nothing, so that
`import rlhf_tui` stays instant."""
