"""Linux in the loop (issue 13): a Linux 6.1 test_hmm kernel under QEMU as a third side.

``kernel`` builds and boots it, ``export`` says which traces have a Linux counterpart and
writes them as C tests, ``replay`` compares the kernel with the model line by line and runs
races as stress loops, ``generate`` runs generated traces, ``commands`` registers the
subcommands.  The guest programs are in ``linux/guest/``.
"""
