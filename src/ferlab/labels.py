"""The seven FER2013 classes, in the order of the challenge CSV's numeric labels."""

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
IMAGE_SIZE = 48  # pixels, both sides

# Splits of the official protocol: train on Training, choose on PublicTest, report PrivateTest.
SPLITS = ("train", "val", "test")
OFFICIAL_SPLIT_NAMES = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def class_index(name: str) -> int:
    """Index of an emotion by name (case-insensitive); raises ValueError for unknown names."""
    key = name.strip().lower()
    if key not in EMOTIONS:
        raise ValueError(f"unknown class {name!r}; expected one of {', '.join(EMOTIONS)}")
    return EMOTIONS.index(key)
