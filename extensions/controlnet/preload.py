"""sd-webui-controlnet's command-line flags (A1111's `preload.py` convention), honoured by this extension:
`--controlnet-dir` adds a folder of ControlNet models (after `models/ControlNet`), and
`--controlnet-annotator-models-path` a folder of preprocessor models, looked in first."""


def preload(parser):  # type: ignore[no-untyped-def]
    parser.add_argument("--controlnet-dir", type=str, default=None, metavar="DIR",
                        help="ControlNet: another folder with ControlNet models (after models/ControlNet)")
    parser.add_argument("--controlnet-annotator-models-path", type=str, default=None, metavar="DIR",
                        help="ControlNet: a folder with the preprocessors' model folders (looked in first)")
