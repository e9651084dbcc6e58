"""FaceSet: the whole data set as tensors, the one form every reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ferlab.labels import EMOTIONS, IMAGE_SIZE, SPLITS

UNLABELLED = -1  # label of a face from an unlabelled source (the course's test.csv)


@dataclass(frozen=True)
class FaceSet:
    """Faces with labels, split and source id.

    images: (N, 48, 48) uint8; labels: (N,) int64 in 0..6 or -1 (unlabelled);
    splits: (N,) int64 index into ``SPLITS`` ("train", "val", "test"); ids: N source ids
    (a file name or ``line N``). ``skipped`` counts bad entries dropped under ``skip_bad_rows``
    and ``problems`` keeps the first few of their messages, so nothing is lost silently.
    ``official_splits`` says the splits are FER2013's own (Training, PublicTest, PrivateTest),
    not a split drawn here or taken from folder names. ``notes`` say what the reader passed over
    on purpose (an image folder's READMEs), so that too is not lost without a word.
    """

    images: torch.Tensor
    labels: torch.Tensor
    splits: torch.Tensor
    ids: tuple[str, ...]
    source: str = ""
    skipped: int = 0
    problems: tuple[str, ...] = field(default=())
    official_splits: bool = False
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"images must be uint8 (N, 48, 48), got {self.images.dtype} {tuple(self.images.shape)}")
        if not (self.labels.shape == self.splits.shape == (n,)) or len(self.ids) != n:
            raise ValueError("images, labels, splits and ids must have the same length")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def labelled(self) -> bool:
        return bool((self.labels != UNLABELLED).all()) and len(self) > 0

    def split(self, name: str) -> FaceSet:
        """The faces of one split ("train", "val" or "test")."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return self.select(self.splits == SPLITS.index(name))

    def select(self, mask_or_index: torch.Tensor) -> FaceSet:
        index = mask_or_index.nonzero().flatten() if mask_or_index.dtype == torch.bool else mask_or_index
        return FaceSet(
            self.images[index], self.labels[index], self.splits[index],
            tuple(self.ids[i] for i in index.tolist()), self.source, self.skipped, self.problems, self.official_splits,
            self.notes,
        )

    def split_title(self, name: str) -> str:
        """How a split is named in titles: FER2013's own name where the source keeps the official
        split, else the split and the source it came from."""
        official = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
        source = self.source.rstrip("/").rsplit("/", 1)[-1] or self.source
        return f"{official[name]} ({source})" if self.official_splits else f"{name} split of {source}"

    def split_sizes(self) -> dict[str, int]:
        return {name: int((self.splits == i).sum()) for i, name in enumerate(SPLITS)}

    def class_counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(EMOTIONS)}


def stratified_val_split(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Boolean mask choosing ``fraction`` of each class (at least one face where a class has two
    or more) as validation, reproducibly from ``seed``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be between 0 and 1, got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(labels.shape[0], dtype=torch.bool)
    for cls in labels.unique().tolist():
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        take = round(fraction * members.numel())
        if members.numel() >= 2:
            take = min(max(take, 1), members.numel() - 1)
        mask[members[:take]] = True
    return mask
