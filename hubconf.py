"""torch.hub entry points: every registered builder, plus ``get_weight`` and ``get_model_weights``.

torch.hub.load("<checkout or owner/visionzoo>", "resnet50", weights="DEFAULT")
"""

# torch.hub reads `dependencies` before it imports anything else from this file, hence the late imports.
dependencies = ["torch", "PIL", "tqdm"]

from visionzoo.models import get_model_builder as _get_model_builder  # noqa: E402
from visionzoo.models import get_model_weights, get_weight  # noqa: E402, F401
from visionzoo.models import list_models as _list_models  # noqa: E402

globals().update({_name: _get_model_builder(_name) for _name in _list_models()})
