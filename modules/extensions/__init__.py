"""Extensions: a small, versioned API (`api.py`), and the host that discovers, loads, isolates and dispatches them.

Extension code imports only `modules.extensions.api`. The rest of this package is for the application:
`host.ExtensionHost` (owned by the `App`), `metadata` (metadata.ini, requirements, ordering), `loader` (discovery
and import), `scripts` (script UIs, `/sdapi/v1/script-info`, A1111 `script_args`), `script_ui` (Gradio rendering of
the "Script" area) and `installer` (install from a git URL). See extensions/README.md for authors.
"""
