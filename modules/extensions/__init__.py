"""Extensions: a small, versioned API (`api.py`), and the host that discovers, loads, isolates and dispatches them.

Extension code imports only `modules.extensions.api`. The rest of this package is for the application:
`host.ExtensionHost` (owned by the `App`: discovery, enable state, import, installs), `hooks` (dispatch of every
hook), `unet_call` (the per-step model hook), `metadata` (metadata.ini, requirements, ordering), `loader` (discovery
and import), `scripts` (script lookup, `/sdapi/v1/script-info`, A1111 `script_args`, running the selected script),
`script_ui` (Gradio rendering of the "Script" area) and `installer` (install from a git URL). See
extensions/README.md for authors.
"""
