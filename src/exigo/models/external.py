"""Models named by code instead of the registry: timm's (`model.name: timm:resnet18`) and a
user's own class (`model.name: my_pkg.my_models:Net`), wrapped to exigo's model contract.

A user's class is imported from the project root (stages run as `python -m stages.X` there) and
built with whichever of these keyword arguments its signature takes (all of them if it takes
**kwargs), plus model.args:

    in_channels   1 or 3
    num_classes   the number of classes; forward(x) must return (B, num_classes) logits
    image_size    (H, W)

Its inputs are normalised already (exigo's Normalize runs first). Optional:
    features(x)   -> (B, D) penultimate features, for the embeddings; without it (a `features`
                  submodule is not it), the input of the last nn.Linear its forward calls
    last_conv     the name of its Grad-CAM layer (a string, as for `get_submodule`, or the module
                  itself); without it, the last nn.Conv2d whose output is larger than 1x1

A timm model is built untrained (pretrained=False) with num_classes, in_chans and (where it
takes one: ViT, Swin) img_size set and model.args passed on; its features are timm's pre-logits and its Grad-CAM layer the last stage
of its feature_info whose output is a map larger than 1x1 (else the last such nn.Conv2d).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from exigo.models.checkpoint import ModelCodeError
from exigo.models.layers import Normalize, weighted_children

TIMM = "timm:"
USER_KWARGS = ("in_channels", "num_classes", "image_size")  # what a user's class may take
Norm = float | Sequence[float]


class External(nn.Module):
    """normalise -> a timm or user network `net`: logits, `features()`, `last_conv`, `blocks()`.

    The checkpoint's keys are `normalize.*` and `net.<the network's own keys>`."""

    def __init__(
        self,
        net: nn.Module,
        mean: Norm,
        std: Norm,
        features_from: str | None,
        last_conv: str | None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        # "timm": forward_features + forward_head(pre_logits); "method": net.features();
        # otherwise the dotted name (in net) of the nn.Linear whose input the features are.
        self.features_from = features_from
        self.last_conv = last_conv  # dotted name from this module, or None: no Grad-CAM layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))  # (B, num_classes) logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, D) penultimate features."""
        x = self.normalize(x)
        if self.features_from == "timm":
            f = self.net.forward_head(self.net.forward_features(x), pre_logits=True)
        elif self.features_from == "method":
            f = self.net.features(x)
        else:
            captured: list[torch.Tensor] = []
            linear = self.net.get_submodule(self.features_from)
            hook = linear.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
            try:
                self.net(x)
            finally:
                hook.remove()
            f = captured[-1]
        return f.flatten(1)

    def blocks(self) -> list[str]:
        """Names of the network's top-level children that hold weights, in their order."""
        return weighted_children(self.net, prefix="net.")


def build_external(
    name: str,
    args: dict[str, Any],
    num_classes: int,
    mean: Norm,
    std: Norm,
    shape: Sequence[int],
) -> External:
    """The timm model (`timm:<name>`) or user class (`pkg.mod:Cls`) `name`, built with the
    keyword arguments `args` for images of `shape` (C, H, W), behind exigo's model contract."""
    channels, height, width = (int(v) for v in shape)
    if name.startswith(TIMM):
        net = _timm_net(name, dict(args), num_classes, channels, (height, width))
    else:
        cls = _import(name)
        sizes = {"in_channels": channels, "num_classes": num_classes, "image_size": (height, width)}
        net = _construct(name, cls, sizes, dict(args))
    probe = _dry_run(name, net, num_classes, (channels, height, width))
    if name.startswith(TIMM):
        features_from = "timm"
        last_conv = _timm_cam_layer(net, probe) or probe.last_big_conv
    else:
        features_from = "method" if _has_features_method(net) else probe.last_linear
        if features_from is None:
            raise ModelCodeError(
                f"model.name {name}: it has no features() method and no nn.Linear layer whose "
                "input exigo could take as its penultimate features; define features(x) -> (B, D)"
            )
        last_conv = _user_cam_layer(name, net) or probe.last_big_conv
    return External(
        net, mean, std, features_from, f"net.{last_conv}" if last_conv is not None else None
    )


def _timm_net(
    name: str, args: dict[str, Any], num_classes: int, channels: int, size: tuple[int, int]
) -> nn.Module:
    model = name.removeprefix(TIMM)
    try:
        import timm
    except ImportError:
        raise ModelCodeError(
            f"model.name {name} needs timm, which is not installed: pip install -e '.[timm]'"
        ) from None
    if not timm.is_model(model):
        close = timm.list_models(f"*{model}*")[:5] or difflib.get_close_matches(
            model, timm.list_models(), n=5, cutoff=0.6
        )
        hint = f"close names: {', '.join(close)}" if close else "see timm.list_models()"
        raise ModelCodeError(
            f"model.name {name}: timm {timm.__version__} has no model '{model}'; {hint}"
        )
    taken = [k for k in ("pretrained", "num_classes", "in_chans") if k in args]
    if taken:
        raise ModelCodeError(
            f"model.args: exigo sets {', '.join(taken)} itself (untrained, from the data); remove it"
        )
    fixed = {"pretrained": False, "num_classes": num_classes, "in_chans": channels}
    # Models with a fixed grid (ViT, Swin, MaxViT) take the image size; most convnets refuse it.
    sized = {"img_size": size} if "img_size" not in args else {}
    try:
        try:
            return timm.create_model(model, **fixed, **sized, **args)
        except TypeError as exc:
            if not sized or "img_size" not in str(exc):
                raise
        return timm.create_model(model, **fixed, **args)
    except Exception as exc:  # timm's models check their arguments in many ways
        raise ModelCodeError(
            f"model.name {name}: timm refused model.args {args}: {_first_line(exc)}"
        ) from None


def _import(name: str) -> Callable[..., nn.Module]:
    """The class (or factory) `pkg.mod:Cls`, imported from the path (the project root first)."""
    module_name, _, attr = name.partition(":")
    where = f"{module_name.replace('.', '/')}.py"
    importlib.invalidate_caches()  # a file written since the last import is found
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ModelCodeError(
                f"model.name {name}: no module '{module_name}' on the path ({where} from the "
                "project root): the checkpoint or params.yaml names it, but its code is gone; "
                "restore it, or retrain with another model.name"
            ) from None
        raise ModelCodeError(
            f"model.name {name}: {where} imports '{exc.name}', which is not installed"
        ) from None
    except Exception as exc:  # a user's file can fail in any way: say which and where
        raise ModelCodeError(
            f"model.name {name}: importing {where} failed: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    target = getattr(module, attr, None)
    if target is None:
        raise ModelCodeError(
            f"model.name {name}: {where} has no '{attr}': the checkpoint or params.yaml names it, "
            "but its code is gone; restore it, or retrain with another model.name"
        )
    if not callable(target):
        raise ModelCodeError(f"model.name {name}: '{attr}' in {where} is not a class")
    return target


def _construct(
    name: str, cls: Callable[..., nn.Module], sizes: dict[str, Any], args: dict[str, Any]
) -> nn.Module:
    taken = [k for k in USER_KWARGS if k in args]
    if taken:
        raise ModelCodeError(
            f"model.args: exigo passes {', '.join(taken)} itself (from the data); remove it"
        )
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): offer them all
        params = None
    takes_all = params is None or any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in sizes.items() if takes_all or k in params} | args
    try:
        net = cls(**kwargs)
    except Exception as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ModelCodeError(
            f"model.name {name}: {name.partition(':')[2]}({shown}) failed: "
            f"{type(exc).__name__}: {_first_line(exc)} (exigo passes in_channels, num_classes, "
            "image_size where the signature takes them, and model.args)"
        ) from None
    if not isinstance(net, nn.Module):
        raise ModelCodeError(
            f"model.name {name}: it built a {type(net).__name__}, not a torch.nn.Module"
        )
    return net


class _Probe:
    """What one forward pass of a zeros image showed: the layers' output shapes, in call order."""

    def __init__(self) -> None:
        self.outputs: dict[str, tuple[int, ...]] = {}  # module name -> its output's shape
        self.last_linear: str | None = None
        self.last_big_conv: str | None = None


def _dry_run(name: str, net: nn.Module, num_classes: int, shape: tuple[int, int, int]) -> _Probe:
    """Run a zeros (1, C, H, W) batch through `net` in eval mode, recording what ran."""
    probe, hooks = _Probe(), []

    def record(module_name: str, module: nn.Module):
        def hook(_m, _args, out) -> None:
            if torch.is_tensor(out):
                probe.outputs[module_name] = tuple(out.shape)
                if isinstance(module, nn.Linear):
                    probe.last_linear = module_name
                elif isinstance(module, nn.Conv2d) and out.ndim == 4 and out.shape[-2:].numel() > 1:
                    probe.last_big_conv = module_name

        return hook

    for module_name, module in net.named_modules():
        if module_name:
            hooks.append(module.register_forward_hook(record(module_name, module)))
    was_training = net.training
    try:
        with torch.no_grad():
            out = net.eval()(torch.zeros(1, *shape))
    except Exception as exc:
        raise ModelCodeError(
            f"model.name {name}: its forward failed on a (1, {', '.join(map(str, shape))}) batch: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from None
    finally:
        for hook in hooks:
            hook.remove()
        net.train(was_training)
    got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
    if got != (1, num_classes):
        raise ModelCodeError(
            f"model.name {name}: forward returns {got} for a batch of 1, not (1, {num_classes}): "
            "it must return (B, num_classes) logits, num_classes as exigo passes it"
        )
    return probe


def _has_features_method(net: nn.Module) -> bool:
    """A features() method of its own; a `features` submodule (torchvision's VGG and AlexNet
    name their conv stack so) is not one: the input of the last nn.Linear is taken then."""
    found = getattr(net, "features", None)
    return callable(found) and not isinstance(found, nn.Module)


def _timm_cam_layer(net: nn.Module, probe: _Probe) -> str | None:
    """The last stage of timm's feature_info whose output is an NCHW map larger than 1x1."""
    for info in reversed(getattr(net, "feature_info", None) or []):
        out = probe.outputs.get(info.get("module", ""))
        if out and len(out) == 4 and out[1] == info.get("num_chs") and out[2] * out[3] > 1:
            return info["module"]
    return None


def _user_cam_layer(name: str, net: nn.Module) -> str | None:
    """The user's own `last_conv`: a module name, or the module itself."""
    named = getattr(net, "last_conv", None)
    if named is None:
        return None
    if isinstance(named, nn.Module):
        found = next((n for n, m in net.named_modules() if m is named and n), None)
        if found is None:
            raise ModelCodeError(f"model.name {name}: its last_conv is not one of its modules")
        return found
    try:
        net.get_submodule(str(named))
    except AttributeError:
        raise ModelCodeError(
            f"model.name {name}: its last_conv '{named}' names no module of it; give the dotted "
            "name of its Grad-CAM layer (as for get_submodule)"
        ) from None
    return str(named)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
