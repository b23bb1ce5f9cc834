"""The next training batch on the device while the current step runs.

On a GPU each batch is gathered from the decoded-image cache straight into one of two pinned
host buffers and copied to the device on a side stream (non-blocking): the copy overlaps the
step before it, the host never waits for it, and the step's stream waits on the copy's event
before it reads the batch. On a CPU a batch is taken when it is requested (the same batches in
the same order; nothing to overlap with).

The engine requests batch t+1 after it has launched step t's work, and only batches of the
current epoch: the data stream's saved position at an epoch's end is where a plain loop leaves
it, so a resumed run sees the same batches.
"""

from __future__ import annotations

import torch

from finetune.data import Split


class BatchPrefetcher:
    """``request(idx)`` starts fetching a batch's images and labels to ``device``; ``get()`` returns
    the one requested last (ready for the current stream)."""

    def __init__(self, split: Split, batch_size: int, device: torch.device) -> None:
        self.split, self.device = split, device
        self.overlap = device.type == "cuda"
        self.pending: tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None] | None = None
        if self.overlap:
            self.side = torch.cuda.Stream(device)
            shape = (batch_size, *split.row_shape())
            self.host = [
                (
                    torch.empty(shape, dtype=torch.uint8, pin_memory=True),
                    torch.empty(batch_size, dtype=torch.int64, pin_memory=True),
                )
                for _ in range(2)
            ]
            self.copied: list[torch.cuda.Event | None] = [None, None]
            self.turn = 0

    def request(self, idx: torch.Tensor) -> None:
        if not self.overlap:
            images = self.split.take(idx).to(self.device)
            self.pending = (images, self.split.labels[idx].to(self.device), None)
            return
        turn, self.turn = self.turn, 1 - self.turn
        previous = self.copied[turn]
        if previous is not None:
            previous.synchronize()  # the copy out of this buffer, two batches ago, is done
        images_host, labels_host = self.host[turn]
        images = self.split.take(idx, out=images_host)
        torch.index_select(self.split.labels, 0, idx, out=labels_host)
        with torch.cuda.stream(self.side):
            on_device = images.to(self.device, non_blocking=True), labels_host.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.side)
        self.copied[turn] = event
        self.pending = (*on_device, event)

    def get(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.pending is not None, "request a batch before getting it"
        images, labels, event = self.pending
        self.pending = None
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            images.record_stream(current)  # allocated on the side stream, used on this one
            labels.record_stream(current)
        return images, labels
