"""Options that name files or folders cannot be changed over the API unless the server allows it
(`--api-allow-path-options`): POST options and override_settings answer 403 and change nothing."""

from __future__ import annotations

import dataclasses

SMALL = {"prompt": "x", "steps": 1, "width": 64, "height": 64}


def test_post_options_refuses_a_new_output_folder(make_server):
    app, client = make_server()
    response = client.post("/sdapi/v1/options", json={"outdir_samples": "/anywhere", "samples_format": "jpg"})
    assert response.status_code == 403
    assert "outdir_samples" in response.json()["detail"] and "--api-allow-path-options" in response.text
    assert app.settings.get()["outdir_samples"] == "" and app.settings.get()["samples_format"] == "png"


def test_sending_back_every_option_unchanged_is_fine(make_server):
    app, client = make_server()
    options = client.get("/sdapi/v1/options").json()
    options["samples_format"] = "webp"
    assert client.post("/sdapi/v1/options", json=options).status_code == 200
    assert app.settings.get()["samples_format"] == "webp"


def test_override_settings_cannot_move_a_job_or_rename_its_files(make_server):
    _, client = make_server()
    for key, value in (("outdir_txt2img_samples", "/tmp/elsewhere"), ("samples_filename_pattern", "../[seed]"),
                       ("directories_filename_pattern", "../../x")):
        response = client.post("/sdapi/v1/txt2img", json={**SMALL, "override_settings": {key: value}})
        assert response.status_code == 403 and key in response.text


def test_the_launch_flag_allows_them(make_server, tmp_path):
    app, client = make_server()
    app.launch = dataclasses.replace(app.launch, api_allow_path_options=True)
    folder = str(tmp_path / "out")
    assert client.post("/sdapi/v1/options", json={"outdir_samples": folder}).status_code == 200
    assert app.settings.get()["outdir_samples"] == folder
