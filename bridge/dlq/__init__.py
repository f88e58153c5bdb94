"""Dead letters read back, judged again and replayed: ``letters`` reads the DLQ by scan,
``replay`` publishes what now passes (the repair's no-double rule), ``report`` and
``metrics`` say what happened."""
