raise KeyboardInterrupt  # raised by the code itself, not a Ctrl-C: not exit 130
