"""Independent, hand-written PyTorch references of published recurrent vision models.

They exist only for equivalence tests of tnnspec-compiled models.  Each module states
its source (paper and upstream repository HEAD) and the update equations it implements.
State-dict key names follow the upstream code wherever upstream code exists, so that
published checkpoints load with ``strict=True``.

- :mod:`.cornet` -- CORnet-Z, -R, -RT, -S (dicarlolab/CORnet).
- :mod:`.blt_ccn23` -- BLT_net_64 (KietzmannLab/BLT-pytorch-CCN23).
- :mod:`.blt_spoerer2017` -- B, BL, BT, BLT of Spoerer, McClure & Kriegeskorte 2017 (paper-level).
- :mod:`.convrnn` -- ConvRNN ``gru_shallow`` (neuroailab/convrnns; own key names).
"""
