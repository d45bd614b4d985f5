"""The slot: the one model container, mechanism only: the ``Slot`` Protocol policy uses
(``protocol``), its Docker implementation (``docker_slot``), finding the running controller
(``discovery``) and the startup facts in the log (``facts``)."""
