"""Built-in chip backends. Each sub-package is one self-contained target registered through the
``nirdeploy.targets`` entry-point group, exactly as a third-party target would be."""
