"""What a person reads: console tables (`console.py`), PNG pictures (`plots.py`), and the provenance
written into every report and benchmark (`provenance.py`)."""
