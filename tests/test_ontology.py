import json

import pytest

from grounded_sam import CaptionOntology


def test_many_prompts_one_class_and_deduplicated_classes():
    ontology = CaptionOntology({"a dog": "dog", "puppy": "dog", "a person": "person", "doggo": "dog"})
    assert ontology.prompts() == ["a dog", "puppy", "a person", "doggo"]
    assert ontology.classes() == ["dog", "person"]
    assert ontology.promptToClass("puppy") == "dog"
    assert ontology.classToPrompt("dog") == "a dog"
    assert ontology.class_id("person") == 1
    assert len(ontology) == 4


def test_classes_keep_first_seen_order_not_alphabetical():
    ontology = CaptionOntology(
        {"a zebra": "zebra", "an apple": "apple", "a striped horse": "zebra", "a mango": "mango"}
    )
    assert ontology.classes() == ["zebra", "apple", "mango"]
    assert ontology.class_id("apple") == 1


def test_entries_are_stripped():
    assert CaptionOntology({"  a cat ": " cat "}).to_dict() == {"a cat": "cat"}


@pytest.mark.parametrize(
    "mapping, message",
    [
        ({}, "empty"),
        ({"": "dog"}, "blank"),
        ({"   ": "dog"}, "blank"),
        ({"a dog": ""}, "blank"),
        ({"a dog": 3}, "must be a string"),
        ({5: "dog"}, "must be a string"),
        ({"a dog": None}, "must be a string"),
        (["a dog"], "mapping"),
    ],
)
def test_bad_ontologies_raise_naming_the_entry(mapping, message):
    with pytest.raises(ValueError, match=message):
        CaptionOntology(mapping)


def test_unknown_prompt_and_class_raise_key_error():
    ontology = CaptionOntology({"a dog": "dog"})
    with pytest.raises(KeyError, match="not a prompt"):
        ontology.promptToClass("cat")
    with pytest.raises(KeyError, match="not a class"):
        ontology.classToPrompt("cat")


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("o.yaml", "a dog: dog\npuppy: dog\n", {"a dog": "dog", "puppy": "dog"}),
        ("o.yml", "- dog\n- cat\n", {"dog": "dog", "cat": "cat"}),
        ("o.json", json.dumps({"a car": "car"}), {"a car": "car"}),
        ("o.json", json.dumps(["car", "bus"]), {"car": "car", "bus": "bus"}),
    ],
)
def test_from_file(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    assert CaptionOntology.from_file(path).to_dict() == expected


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("o.yaml", "", "mapping"),
        ("o.yaml", "just a string", "mapping"),
        ("o.yaml", "a dog: [1, 2]", "must be a string"),
        ("o.yaml", "a dog: dog\n  bad: : indent", "not valid YAML"),
        ("o.json", "{not json", "not valid JSON"),
        ("o.json", "{}", "empty"),
    ],
)
def test_from_file_errors_name_the_file(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        CaptionOntology.from_file(path)
    assert str(path) in str(error.value)


def test_from_missing_file():
    with pytest.raises(FileNotFoundError, match="Ontology file not found"):
        CaptionOntology.from_file("/no/such/ontology.yaml")


@pytest.mark.parametrize("name, classes", [("coco.yaml", 80), ("pets.yaml", 5), ("vehicles.json", 6)])
def test_shipped_ontologies_load(name, classes):
    from pathlib import Path

    ontology = CaptionOntology.from_file(Path(__file__).parent.parent / "ontologies" / name)
    assert len(ontology.classes()) == classes
