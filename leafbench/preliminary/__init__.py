"""The paper's preliminary experiment (§2): the undistilled student on the mined training items
before and after removing the mined tokens, with a random-removal control (stage.py)."""
