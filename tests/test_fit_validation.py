"""Validation losses computed inside the training runs (``prepare_epochs``' ``val``): on
every fit path, in long slices and epoch by epoch, against the float64 reference trainer
(``optim_reference.py``) evaluated on the validation rows after each epoch's update."""
import numpy as np
import pytest

import optim_reference as ref
from test_optimizers import ARCHS, FIT_PAIRS, L2, LR, MINI, _forced_or_skip, close, data, network

CASES = [("softmax", "adam", L2, None), ("bce", "momentum", 0.0, None),
         ("mse", "nesterov", L2, None), ("se", "sgd", 0.0, None), ("softmax", "sgd", 0.0, MINI)]
EPOCHS = 30


def reference_with_validation(net, arch, X, Y, Xv, Yv, epochs, lr, batch, optimizer, l2):
    """(losses, val_losses): the reference trainer epoch by epoch, the validation loss
    (no L2 term) of its parameters after each epoch's update."""
    _, acts, loss = ARCHS[arch]
    trainer = ref.Trainer(net.get_params(), acts, loss, optimizer, l2)
    orders = None
    if batch is not None:
        orders = ref.shuffle_orders(net.seed, len(X), epochs)
    losses, val_losses = [], []
    for e in range(epochs):
        losses.append(trainer.fit(X, Y, 1, lr, batch, None if orders is None
                                  else orders[e:e + 1])[0])
        val_losses.append(ref.loss_and_grads(trainer.params, acts, loss, Xv, Yv)[0])
    return np.array(losses), np.array(val_losses)


def case_id(case):
    arch, opt, l2, bs = case
    return f"{arch}-{opt}-{'l2' if l2 else 'nol2'}-{'full' if bs is None else 'mini'}"


@pytest.mark.parametrize("per_epoch", [False, True], ids=["slices", "per-epoch"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("name,path", FIT_PAIRS, ids=[f"{b}-{p}" for b, p in FIT_PAIRS])
def test_validation_losses_follow_the_reference_on_every_fit_path(make_backend, name, path,
                                                                  case, per_epoch):
    arch, opt, l2, batch = case
    be = make_backend(name)
    X, Y = data(arch)
    Xv, Yv = data(arch, n=5, seed=11)
    net = network(arch, be)
    want_loss, want_val = reference_with_validation(net, arch, X, Y, Xv, Yv, EPOCHS, LR[opt],
                                                    batch, opt, l2)
    seen = []
    callback = (lambda e, record: seen.append(record["val_loss"])) if per_epoch else None
    hist = _forced_or_skip(be, path, batch, lambda: net.fit(
        X, Y, epochs=EPOCHS, lr=LR[opt], batch_size=batch, shuffle=batch is not None,
        optimizer=opt, l2=l2, validation_data=(Xv, Yv), callback=callback))
    close(hist.loss, want_loss)
    close(hist.val_loss, want_val)
    if per_epoch:
        assert seen == hist.val_loss
    # the validation loss is the one evaluate reports for the final parameters
    assert hist.val_loss[-1] == pytest.approx(net.evaluate(Xv, Yv), rel=1e-12)
