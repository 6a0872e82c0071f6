"""A small WordNet 3.0 in its plain-text format, with every ImageNet-1k class in it.

A handful of real synsets (dog, cat, owl, hot dog, crane, zebra) with their real offsets and
a simplified hierarchy; every other ImageNet class is a placeholder with a lemma no dictionary
knows, under "object" (generic), so that it has no concept at all and the tiny test model's
captions of coloured shapes change only when a test says so.
"""

from __future__ import annotations

from pathlib import Path

from training.concepts import read_imagenet_classes

# offset: (lemmas, hypernym offsets)
SYNSETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "00001740": (("entity",), ()),
    "00001930": (("physical_entity",), ("00001740",)),
    "00002684": (("object", "physical_object"), ("00001930",)),
    "00007846": (("person", "individual"), ("00002684",)),
    "00015388": (("animal", "beast"), ("00002684",)),
    "00021939": (("artifact",), ("00002684",)),
    "00021265": (("food", "nutrient"), ("00001930",)),
    "02084071": (("dog", "domestic_dog"), ("00015388",)),
    "02099267": (("retriever",), ("02084071",)),
    "02099712": (("Labrador_retriever",), ("02099267",)),
    "02121620": (("cat", "true_cat"), ("00015388",)),
    "02123045": (("tabby", "tabby_cat"), ("02121620",)),
    "01503061": (("bird",), ("00015388",)),
    "01621127": (("owl",), ("01503061",)),
    "01622779": (("great_grey_owl", "great_gray_owl"), ("01621127",)),
    "02012849": (("crane",), ("01503061",)),
    "03126707": (("crane",), ("00021939",)),
    "02391049": (("zebra",), ("00015388",)),
    "07695965": (("sandwich",), ("00021265",)),
    "07697537": (("hotdog", "hot_dog", "red_hot"), ("07695965",)),
    "10187710": (("hot_dog", "hotdog"), ("00007846",)),  # a show-off: a person
    # For training.mentions: people, dogs, cats, clothing, and words that only look like them.
    "00002137": (("abstraction",), ("00001740",)),
    "00031264": (("group", "grouping"), ("00002137",)),
    "07942152": (("people",), ("00031264",)),
    "10287213": (("man", "adult_male"), ("00007846",)),
    "10787470": (("woman", "adult_female"), ("00007846",)),
    "10285313": (("male_child", "boy"), ("00007846",)),
    "10129825": (("girl",), ("00007846",)),
    "09917593": (("child", "kid"), ("00007846",)),
    "10679054": (("surfer", "surfboarder"), ("00007846",)),
    "09827683": (("baby", "babe", "infant"), ("00007846",)),
    "09860506": (("blond", "blonde"), ("00007846",)),  # mostly an adjective (COUNTS)
    "09747722": (("German",), ("00007846",)),  # a name: capitalised
    "09444100": (("star",), ("00002684",)),  # the star in the sky is the usual sense
    "10648696": (("star", "principal", "lead"), ("00007846",)),
    "01322604": (("puppy",), ("02084071",)),
    "02114100": (("wolf",), ("00015388",)),
    "02121808": (("domestic_cat", "house_cat"), ("02121620",)),
    "02122725": (("tom", "tomcat"), ("02121808",)),
    "02122948": (("kitten", "kitty"), ("00015388",)),
    "02127808": (("big_cat",), ("00015388",)),
    "02503517": (("elephant",), ("00015388",)),
    "01529672": (("finch",), ("01503061",)),
    "03051540": (("clothing", "article_of_clothing"), ("00021939",)),
    "03419014": (("garment",), ("03051540",)),
    "04197391": (("shirt",), ("03419014",)),
    "03589791": (("jacket",), ("03419014",)),
    "03497657": (("hat",), ("03051540",)),
    "13000001": (("circle",), ("00021939",)),
    "13000002": (("square",), ("00021939",)),
    "13000003": (("triangle",), ("00021939",)),
}
PLACEHOLDER_PARENT = "00002684"  # object
VERBS = ("dog", "crane", "square", "circle")
# cntlist.rev: how often a sense was tagged (noun senses numbered in index.noun's order).
COUNTS = ("star%1:17:00:: 1 8", "star%1:18:01:: 2 3", "blond%3:00:00:: 1 1")


def write_wordnet(directory: Path) -> Path:
    """data.noun, index.noun, noun.exc, index.verb and cntlist.rev under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    synsets = dict(SYNSETS)
    for position, wnid in enumerate(read_imagenet_classes()):
        offset = wnid[1:]
        if offset not in synsets:
            synsets[offset] = ((f"qzx{position}",), (PLACEHOLDER_PARENT,))
    data, senses = [], {}
    for offset, (lemmas, hypernyms) in sorted(synsets.items()):
        words = " ".join(f"{lemma} 0" for lemma in lemmas)
        pointers = " ".join(f"@ {h} n 0000" for h in hypernyms)
        data.append(
            f"{offset} 05 n {len(lemmas):02x} {words} {len(hypernyms):03d} {pointers} | a gloss"
        )
        for lemma in lemmas:
            senses.setdefault(lemma.lower(), []).append(offset)
    # index.noun lists a lemma's senses most common first: "crane" the machine, then the bird.
    senses["crane"] = ["03126707", "02012849"]
    senses["hot_dog"] = ["10187710", "07697537"]
    index = [
        f"{lemma} n {len(offsets)} 1 @ {len(offsets)} 0 {' '.join(offsets)}"
        for lemma, offsets in sorted(senses.items())
    ]
    (directory / "data.noun").write_text("  1 licence header\n" + "\n".join(data) + "\n")
    (directory / "index.noun").write_text("  1 licence header\n" + "\n".join(index) + "\n")
    (directory / "noun.exc").write_text("geese goose\nmice mouse\nmen man\nwomen woman\n")
    (directory / "index.verb").write_text("\n".join(f"{v} v 1 0 1 0 00000001" for v in VERBS))
    (directory / "cntlist.rev").write_text("\n".join(COUNTS) + "\n")
    return directory
