"""Tracebacks on the run page name files by where they are in the project, not on the machine."""

import json
import sysconfig
from pathlib import Path

from django.conf import settings

from runs.tracebacks import display_path, format_exception


def _raise_from_json():
    json.loads("{not json")


def test_a_project_file_is_shown_relative_to_the_project():
    try:
        _raise_from_json()
    except ValueError as exc:
        text = format_exception(exc)
    assert 'File "tests/runs/test_tracebacks.py", line' in text
    assert str(settings.BASE_DIR) not in text


def test_the_standard_library_and_site_packages_are_shown_by_their_role():
    stdlib = Path(sysconfig.get_paths()["stdlib"]) / "json" / "decoder.py"
    assert display_path(str(stdlib)) == "python/json/decoder.py"
    package = Path(sysconfig.get_paths()["purelib"]) / "django" / "db" / "utils.py"
    assert display_path(str(package)) == "site-packages/django/db/utils.py"


def test_a_path_outside_every_root_is_left_as_it_is():
    assert display_path("/elsewhere/plugin.py") == "/elsewhere/plugin.py"
    assert display_path("<string>") == "<string>"


def test_a_directory_that_only_starts_like_the_project_is_not_shortened():
    sibling = str(settings.BASE_DIR) + "-old/pipelines/people.py"
    assert display_path(sibling) == sibling


def _raising(filename: str):
    """A function whose code object comes from `filename`, raising from its line 2."""
    namespace: dict = {}
    exec(compile("def fail():\n    raise ValueError('boom')\n", filename, "exec"), namespace)  # noqa: S102
    return namespace["fail"]


def _formatted(function) -> str:
    try:
        function()
    except ValueError as exc:
        return format_exception(exc)
    raise AssertionError("did not raise")


def test_two_stacks_with_the_same_line_numbers_are_formatted_each_by_its_own_code():
    assert 'File "first.py", line 2, in fail' in _formatted(_raising("first.py"))
    assert 'File "second.py", line 2, in fail' in _formatted(_raising("second.py"))


def test_a_cached_stack_keeps_its_code_objects_so_their_ids_are_not_reused():
    import gc
    import weakref

    function = _raising("gone.py")
    assert 'File "gone.py"' in _formatted(function)
    code = weakref.ref(function.__code__)
    del function
    gc.collect()
    assert code() is not None  # the stack cache, keyed by the code's id, holds the code itself


def test_notes_and_syntax_errors_keep_python_own_exception_lines_redacted():
    from runs.tracebacks import format_parts

    try:
        raise ValueError("bad row")
    except ValueError as exc:
        exc.add_note("while reading password=hunter22")
        head, line = format_parts(exc)
    assert line == "" and head.endswith("ValueError: bad row\nwhile reading password=***\n")
    try:
        compile("def (:", "export.py", "exec")
    except SyntaxError as exc:
        head, line = format_parts(exc)
    assert line == "" and 'File "export.py", line 1' in head and "SyntaxError" in head


def test_an_exception_class_is_named_the_same_the_first_time_and_after():
    from runs.tracebacks import format_parts

    class FreshError(Exception):
        pass

    lines = []
    for _ in range(2):
        try:
            raise FreshError("x")
        except FreshError as exc:
            lines.append(format_parts(exc)[1])
    assert lines == [f"{__name__}.{FreshError.__qualname__}: x\n"] * 2
