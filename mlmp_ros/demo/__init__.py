"""mlmp-demo, the top of the stack (nothing else in the package imports it): ``main`` (the console
entry point and the run on the bundled sample stream), ``arguments`` (the command line and its
checks), ``world`` (NoAdapt and the adapted configuration side by side on the world model),
``common`` (what both runs share) and ``sample_stream`` (the bundled camera stream)."""
