// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title Swarm-learning registry
/// @notice Records, per training round, each registered institution's model CID and validation
/// loss, evaluates the early-stopping rule on chain, then records each institution's deep-features
/// CID. The owner registers institutions; registration closes when the first round record arrives,
/// so the set of institutions (who also attest reward allocations) is fixed for the whole run.
/// @dev Stopping rule (evaluated when a round closes, i.e. when every institution has submitted):
/// the round's mean validation loss is the integer mean of the submitted losses; the best round is
/// the first round with the lowest mean (like numpy.argmin); training stops once
/// `round - bestRound >= patience` (the minimum is not among the last `patience` rounds) or
/// `round + 1 >= maxRounds`. Losses are unsigned fixed-point integers (ddval uses 1e12 per unit).
contract SwarmRegistry is Ownable {
    error ZeroAddress();
    error AlreadyRegistered(address account);
    error RegistrationClosed();
    error NotInstitution(address account);
    error InvalidStoppingRule(uint256 patience, uint256 maxRounds);
    error TrainingHasStopped();
    error TrainingNotStopped();
    error WrongRound(uint256 expected, uint256 got);
    error AlreadySubmitted(address institution, uint256 round);
    error EmptyCid();
    error FeaturesAlreadySubmitted(address institution);

    event InstitutionRegistered(address indexed institution, uint256 index);
    event RoundSubmitted(uint256 indexed round, address indexed institution, bytes modelCid, uint256 valLoss);
    event RoundClosed(uint256 indexed round, uint256 meanLoss, bool isBest);
    event TrainingStopped(uint256 lastRound, uint256 bestRound, uint256 bestMeanLoss, bool patienceExhausted);
    event FeaturesSubmitted(address indexed institution, bytes featuresCid);

    uint256 public immutable patience;
    uint256 public immutable maxRounds;

    address[] private _institutions;
    mapping(address => uint256) private _indexPlusOne;

    /// @notice The round that is being filled (all earlier rounds are closed).
    uint256 public currentRound;
    /// @notice How many institutions have submitted `currentRound` so far.
    uint256 public submittedInRound;
    uint256 private _lossSum;

    bool public stopped;
    uint256 public bestRound;
    uint256 public bestMeanLoss = type(uint256).max;
    uint256 public featuresSubmitted;

    mapping(uint256 round => mapping(address institution => bytes cid)) private _modelCid;
    mapping(uint256 round => mapping(address institution => uint256 loss)) private _valLoss;
    mapping(uint256 round => uint256 mean) private _roundMeanLoss;
    mapping(address institution => bytes cid) private _featuresCid;

    modifier onlyInstitution() {
        if (_indexPlusOne[msg.sender] == 0) revert NotInstitution(msg.sender);
        _;
    }

    constructor(address initialOwner, uint256 patience_, uint256 maxRounds_) Ownable(initialOwner) {
        if (patience_ == 0 || maxRounds_ == 0) revert InvalidStoppingRule(patience_, maxRounds_);
        patience = patience_;
        maxRounds = maxRounds_;
    }

    // ---------------------------------------------------------------- registration

    /// @notice Register an institution (owner only, before the first round record).
    function registerInstitution(address institution) external onlyOwner {
        if (institution == address(0)) revert ZeroAddress();
        if (currentRound != 0 || submittedInRound != 0) revert RegistrationClosed();
        if (_indexPlusOne[institution] != 0) revert AlreadyRegistered(institution);
        _institutions.push(institution);
        _indexPlusOne[institution] = _institutions.length;
        emit InstitutionRegistered(institution, _institutions.length - 1);
    }

    function institutionCount() external view returns (uint256) {
        return _institutions.length;
    }

    function institutionAt(uint256 index) external view returns (address) {
        return _institutions[index];
    }

    function isInstitution(address account) external view returns (bool) {
        return _indexPlusOne[account] != 0;
    }

    // ---------------------------------------------------------------- rounds

    /// @notice Record this institution's model CID and validation loss for `round`.
    /// @dev `round` must equal `currentRound` (no skipping, no replays, no double submissions).
    function submitRound(uint256 round, bytes calldata cid, uint256 loss) external onlyInstitution {
        if (stopped) revert TrainingHasStopped();
        if (round != currentRound) revert WrongRound(currentRound, round);
        if (cid.length == 0) revert EmptyCid();
        if (_modelCid[round][msg.sender].length != 0) revert AlreadySubmitted(msg.sender, round);
        _modelCid[round][msg.sender] = cid;
        _valLoss[round][msg.sender] = loss;
        _lossSum += loss;
        submittedInRound += 1;
        emit RoundSubmitted(round, msg.sender, cid, loss);
        if (submittedInRound == _institutions.length) _closeRound(round);
    }

    function _closeRound(uint256 round) private {
        uint256 mean = _lossSum / _institutions.length;
        _roundMeanLoss[round] = mean;
        // Strict: on ties the earlier round stays the best one, as in ddval.train (numpy.argmin).
        bool isBest = mean < bestMeanLoss;
        if (isBest) {
            bestMeanLoss = mean;
            bestRound = round;
        }
        emit RoundClosed(round, mean, isBest);
        _lossSum = 0;
        submittedInRound = 0;
        currentRound = round + 1;
        bool patienceExhausted = round - bestRound >= patience;
        if (patienceExhausted || round + 1 >= maxRounds) {
            stopped = true;
            emit TrainingStopped(round, bestRound, bestMeanLoss, patienceExhausted);
        }
    }

    /// @notice Number of closed rounds.
    function roundsClosed() external view returns (uint256) {
        return currentRound;
    }

    function modelCid(uint256 round, address institution) external view returns (bytes memory) {
        return _modelCid[round][institution];
    }

    function valLoss(uint256 round, address institution) external view returns (uint256) {
        return _valLoss[round][institution];
    }

    function roundMeanLoss(uint256 round) external view returns (uint256) {
        return _roundMeanLoss[round];
    }

    // ---------------------------------------------------------------- deep features

    /// @notice Record this institution's deep-features CID, once, after training has stopped.
    function submitFeatures(bytes calldata cid) external onlyInstitution {
        if (!stopped) revert TrainingNotStopped();
        if (cid.length == 0) revert EmptyCid();
        if (_featuresCid[msg.sender].length != 0) revert FeaturesAlreadySubmitted(msg.sender);
        _featuresCid[msg.sender] = cid;
        featuresSubmitted += 1;
        emit FeaturesSubmitted(msg.sender, cid);
    }

    function featuresCid(address institution) external view returns (bytes memory) {
        return _featuresCid[institution];
    }
}
