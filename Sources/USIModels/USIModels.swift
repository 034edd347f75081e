/// The model zoo: backbones with timm-compatible names, parameters and default configs.
@_exported import USICore
