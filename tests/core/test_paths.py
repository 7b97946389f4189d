"""mosaic.core.paths: why a setting's path is not a readable file, and the errors that use it."""
from __future__ import annotations

import os

import pytest

from mosaic.core.errors import ConfigError
from mosaic.core.paths import not_a_file
from mosaic.profiles import load_profiles
from mosaic.workload.sources.question_files import load_questions


def test_each_kind_of_non_file_is_named(tmp_path):
    (tmp_path / "dir").mkdir()
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    (tmp_path / "f").write_text("x")
    assert not_a_file(tmp_path / "dir") == "is a folder, not a file"
    assert not_a_file(tmp_path / "loop") == "is a symbolic link that loops"
    assert not_a_file(tmp_path / "dangling") == f"is a link to {tmp_path / 'gone'}, which does not exist"
    assert not_a_file(tmp_path / "nothing") == "does not exist"
    assert not_a_file(tmp_path / "f") == "is a file"


def test_a_folder_given_as_the_question_file_is_called_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="question file .* is a folder, not a file; set workload.questions_dir"):
        load_questions(tmp_path)


def test_a_looping_link_given_as_the_profiles_is_called_a_loop(tmp_path):
    os.symlink(tmp_path / "p.yaml", tmp_path / "p.yaml")
    with pytest.raises(ConfigError, match="profiles: '.*p.yaml' is a symbolic link that loops"):
        load_profiles(str(tmp_path / "p.yaml"))
