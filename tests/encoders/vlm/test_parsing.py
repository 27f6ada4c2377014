import pytest

from encoders.vlm.parsing import match_class, normalize_label, parse_answer, parse_flag

CLASSES = ("clean", "dirty", "cracked glass")


def test_the_asked_format_gives_the_class_and_the_explanation():
    answer = parse_answer("Class: dirty\nExplanation: Brown stains on the left.", CLASSES)
    assert (answer.flag, answer.parsed, answer.explanation) == ("dirty", True, "Brown stains on the left.")


@pytest.mark.parametrize(
    "line",
    [
        "Class: DIRTY",
        'Class: "dirty"',
        "class: 'Dirty'.",
        "**Class:** dirty",
        "- Class: `dirty`;",
        "Class: <dirty>",
        "Class: [Dirty]!",
        "Flag: dirty",
        "CLASS：dirty",  # a full-width colon
        "  class :  “dirty”  ",
    ],
)
def test_case_quotes_markdown_and_punctuation_do_not_matter(line):
    assert parse_answer(line, CLASSES).flag == "dirty"


def test_labels_with_spaces_match_whole():
    assert parse_answer("Class: Cracked  Glass.", CLASSES).flag == "cracked glass"
    assert parse_answer("Class: cracked", CLASSES).flag is None  # a prefix is not the label


def test_an_unknown_class_is_unparsed_but_the_explanation_is_kept():
    answer = parse_answer("Class: rusty\nExplanation: Orange flakes everywhere.", CLASSES)
    assert (answer.flag, answer.parsed, answer.explanation) == (None, False, "Orange flakes everywhere.")


def test_free_text_naming_a_class_is_never_read_as_the_flag():
    answer = parse_answer("The image is not dirty; it might be clean but I cannot tell.", CLASSES)
    assert (answer.flag, answer.parsed, answer.explanation) == (None, False, "")


def test_the_last_class_line_that_names_a_class_wins():
    raw = "Class: clean\nExplanation: at first glance.\nOn a closer look, smudges.\nClass: dirty\nClass: unsure"
    assert parse_answer(raw, CLASSES).flag == "dirty"


def test_a_multiline_explanation_runs_until_the_next_field():
    raw = "Explanation: Smudges near the handle.\n\nAlso a streak at the top.\nClass: dirty\n"
    answer = parse_answer(raw, CLASSES)
    assert answer.flag == "dirty"
    assert answer.explanation == "Smudges near the handle.\n\nAlso a streak at the top."


def test_a_bare_label_is_an_answer():
    assert parse_answer("  Dirty.\n", CLASSES).flag == "dirty"
    assert parse_answer("dirty, probably", CLASSES).flag is None


def test_empty_text_is_unparsed():
    assert parse_answer("", CLASSES) == parse_answer("   \n", CLASSES)
    assert parse_answer("", CLASSES).parsed is False


def test_exact_case_decides_between_labels_that_differ_only_by_case():
    classes = ("OK", "ok")
    assert match_class("ok", classes) == "ok"
    assert match_class("OK", classes) == "OK"
    assert match_class("Ok", classes) is None  # could be either: never guess


def test_normalize_label_strips_nested_decoration():
    assert normalize_label(' **"dirty".** ') == "dirty"
    assert normalize_label("cracked   glass") == "cracked glass"


# --- The RAG Vision Engine's flag: `<flagKey>: True|False` ---------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value", "explanation"),
    [
        ("VisibleDirtyFlag = True", True, ""),
        ("VisibleDirtyFlag: False", False, ""),
        ("visibledirtyflag: TRUE", True, ""),
        ("VISIBLEDIRTYFLAG=false", False, ""),
        ("**VisibleDirtyFlag**: True", True, ""),
        ("VisibleDirtyFlag = True, mud covers the rear door.", True, "mud covers the rear door"),
        ("VisibleDirtyFlag: False — only reflections.", False, "only reflections"),
        ("VisibleDirtyFlag: True\nExplanation: Mud on the sill\nand the wheel arch.", True, "Mud on the sill\nand the wheel arch."),
        ("Explanation: Dust on the bonnet.\nVisibleDirtyFlag = True", True, "Dust on the bonnet."),
        ("VisibleDirtyFlag: True\nOn a second look, VisibleDirtyFlag: False", False, ""),  # the last one counts, as in the engine
    ],
)
def test_a_flag_key_answer_is_read_with_any_case_separator_and_trailing_explanation(raw, value, explanation):
    answer = parse_flag(raw, "VisibleDirtyFlag")
    assert (answer.value, answer.parsed, answer.explanation) == (value, True, explanation)


@pytest.mark.parametrize("raw", [
    "Class: dirty",
    "dirty",
    "VisibleDirtyFlag: maybe",
    "VisibleDirtyFlag: Truest",
    "NotVisibleDirtyFlag: True",  # another key
    "VisibleDirtyFlagged: True",
    "",
])
def test_no_flag_line_for_the_key_is_unparsed(raw):
    answer = parse_flag(raw, "VisibleDirtyFlag")
    assert (answer.value, answer.parsed) == (None, False)


def test_a_flag_key_is_matched_literally():
    assert parse_flag("a.b+: true", "a.b+").value is True
    assert parse_flag("axb+: true", "a.b+").value is None
